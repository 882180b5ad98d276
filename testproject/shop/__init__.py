"""A tiny shop: products, orders, and endpoints that show session hygiene."""
