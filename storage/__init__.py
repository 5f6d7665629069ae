"""Tables, the async engine, migrations and repositories: everything that touches the database."""
