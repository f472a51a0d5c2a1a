"""Microsoft Entra ID access: the msal credential and the Microsoft Graph client."""
