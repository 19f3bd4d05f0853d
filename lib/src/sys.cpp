// SPDX-License-Identifier: LGPL-2.1-or-later
#include "sys.hpp"

#include <unistd.h>

namespace fdbroker::detail::sys {

table calls = {::sendmsg, ::recvmsg, ::close};

}  // namespace fdbroker::detail::sys
