"""The admin's date and number formats (FORMAT_MODULE_PATH): one way of writing dates on every page."""
