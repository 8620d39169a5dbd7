"""A fake credit bureau for tests and the demo (entry point ``fake_bureau``)."""
