"""`python -m di.settings`: the README's configuration table, to paste into it."""

from di.settings import configuration_table

print(configuration_table())
