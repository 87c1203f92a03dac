"""Cross-locale dedupe: assigns every item to one story and links related stories."""
