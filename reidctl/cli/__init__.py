"""The Typer command line. Parses, calls one pipeline function, renders; imports torch lazily."""
