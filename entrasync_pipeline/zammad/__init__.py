"""Zammad access: the REST client and its errors."""
