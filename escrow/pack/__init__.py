"""Signed PDF audit packs: collect from the ledger, render with WeasyPrint, embed the evidence,
sign (PAdES), record, and verify offline from the file alone."""
