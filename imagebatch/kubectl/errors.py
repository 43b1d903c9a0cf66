"""The one error the plugin reports: a sentence for the person at the terminal."""

from __future__ import annotations


class PluginError(Exception):
    """The command could not do what was asked (not found, refused, unreachable): printed as
    `error: <message>`, exit code 2."""
