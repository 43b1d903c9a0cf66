"""The SSRF guard of the worker's downloads. It lives in `imagebatch.core.address_guard` since
the operator's notifications follow the same rules; the worker's modules and tests keep
importing it from here."""

from imagebatch.core.address_guard import (
    AddressGuard,
    BlockedAddressError,
    BlockLog,
    GuardedResolver,
    classify,
    watch_blocks,
)

__all__ = [
    "AddressGuard",
    "BlockLog",
    "BlockedAddressError",
    "GuardedResolver",
    "classify",
    "watch_blocks",
]
