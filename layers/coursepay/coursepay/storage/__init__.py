"""DynamoDB adapters: the only code in the package that talks to AWS.

Import the module you need (`coursepay.storage.payments`, `coursepay.storage.catalog`);
this package imports nothing itself so a cold start pays only for what it uses.
"""
