"""Document thumbnails: page 1 of PDFs and office documents (the `document` job)."""
