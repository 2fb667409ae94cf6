"""Saga coordinator: drives each return through pickup → inspection → intake → refund."""
