"""An example bank plugin: what a bank integrator writes to customize SceneOS for one bank.

It is an ordinary package found through the ``sceneos`` entry point ``example_bank``; a tenant
turns it on with ``plugins = ["example_bank"]``. Its configuration comes from
``[tenants.<id>.plugin_config.example_bank]`` (falling back to the global ``[plugin_config]``).
"""
