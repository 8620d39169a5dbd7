"""Party registry: the bank's customers, with validated resident ID and mobile numbers.

Every product refers to a customer by its ``customer_no``; partners map their own user ids to it
through the super entry. Shape: settings, models, service, api, hooks, cli, plugin.
"""
