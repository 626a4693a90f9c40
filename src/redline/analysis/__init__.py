"""Reading results: traces into steps, command categories, findings, figures, the HTML report
and the Inspect AI export. Nothing here runs a command from a trace; it only reads them."""
