"""Dataset acquisition (`cli.py fetch`, `cli.py scrape`): not built yet, see the open issues."""
