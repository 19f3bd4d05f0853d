// SPDX-License-Identifier: LGPL-2.1-or-later
// FDBROKER_API marks what libfdbroker exports; everything else is hidden.
#pragma once

#if defined(FDBROKER_BUILDING_LIBRARY) || defined(fdbroker_EXPORTS)
#define FDBROKER_API __attribute__((visibility("default")))
#else
#define FDBROKER_API
#endif
