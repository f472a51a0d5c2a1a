"""Loopback emulators of the Entra token endpoint, Microsoft Graph and Zammad.

The sandbox imports neither of entrasync's clients, so a client bug cannot be mirrored here.
"""
