"""Organizations (labs, regulators, platforms, admins) and their scoped API keys."""
