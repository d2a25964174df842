"""A second embedded benchmark: chemistry, languages and web standards."""
