"""identity: INS validation, patient accounts, login with one-time codes, tokens, directory."""
