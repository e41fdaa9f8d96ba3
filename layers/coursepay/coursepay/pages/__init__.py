"""HTML pages a browser sees: rendered from stored records, escaped, in Arabic or English."""
