"""Documents: in-toto Statements, their JSON Schemas and RFC 8785 canonical bytes."""
