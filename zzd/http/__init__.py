"""REST endpoints: thin translations between HTTP and domain services."""
