"""How an error message quotes a name a caller sent: cut short, since a status's message and
metadata travel in HTTP/2 trailers, and a client drops trailers over 8 to 16 KiB."""

from __future__ import annotations


def cut(name: str) -> str:
    """`name` as an error quotes it: its first 64 characters."""
    return name if len(name) <= 64 else name[:64] + "..."


def shown(name: str) -> str:
    return repr(cut(name))
