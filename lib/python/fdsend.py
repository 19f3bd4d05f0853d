# SPDX-License-Identifier: LGPL-2.1-or-later
"""fdsend: the classic file-descriptor passing API, provided by fdbroker.

This top-level module lets code written for the classic fdsend module keep its
`import fdsend`. Everything lives in fdbroker.fdsend; see its documentation.
"""

from fdbroker.fdsend import __all__, recvfds, sendfds, socketpair  # noqa: F401
