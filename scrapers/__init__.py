"""Getting data: `cli.py fetch` (a zipped dataset, safely extracted) and `cli.py scrape` (stock-footage APIs)."""
