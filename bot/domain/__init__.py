"""The pure core: money, customers, invoices, payments and matching. No I/O imports here (a test enforces it)."""
