"""`python -m di.settings`: the table of docs/configuration.md, to paste into it."""

from di.settings import configuration_table

print(configuration_table())
