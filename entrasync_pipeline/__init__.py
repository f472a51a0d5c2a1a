"""entrasync: keeps Zammad's users in sync with Microsoft Entra ID group membership."""

__version__ = "0.1.0"
