"""Pictures and pages: plots and the HTML report."""
