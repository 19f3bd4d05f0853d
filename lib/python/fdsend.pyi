# SPDX-License-Identifier: LGPL-2.1-or-later
from fdbroker.fdsend import recvfds as recvfds, sendfds as sendfds, socketpair as socketpair

__all__ = ["recvfds", "sendfds", "socketpair"]
