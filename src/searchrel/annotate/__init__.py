"""Content annotation: aggregate log signals into item fields, and build model input text from fields."""
