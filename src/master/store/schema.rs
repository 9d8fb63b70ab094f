//! Schema migrations, applied in order at start; `PRAGMA user_version` records how far.

/// Each entry moves the schema one version forward. Never edit a released entry: append.
pub const MIGRATIONS: &[&str] = &[
    // 1: resources as JSON documents keyed like the API paths; tokens and node credentials.
    r#"
    CREATE TABLE resources (
        kind TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        uid TEXT NOT NULL UNIQUE,
        generation INTEGER NOT NULL,
        resource_version INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (kind, namespace, name)
    );
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO counters (name, value) VALUES ('resource_version', 0);
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        secret_sha256 TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at INTEGER
    );
    CREATE TABLE node_credentials (
        node TEXT PRIMARY KEY,
        password_sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    "#,
    // 2: token management: a description, single-use join tokens with a use count, and
    // revocation kept as a timestamp so a revoked token is told apart from an unknown one.
    r#"
    ALTER TABLE tokens ADD COLUMN description TEXT NOT NULL DEFAULT '';
    ALTER TABLE tokens ADD COLUMN single_use INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tokens ADD COLUMN uses INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tokens ADD COLUMN revoked_at TEXT;
    "#,
    // 3: node passwords also in mosquitto's hash form, for `herd broker config mosquitto`.
    r#"
    ALTER TABLE node_credentials ADD COLUMN mosquitto_hash TEXT;
    "#,
    // 4: pod subnets per node (pod networking); UNIQUE so two nodes never share one.
    r#"
    CREATE TABLE pod_cidrs (
        node TEXT PRIMARY KEY,
        cidr TEXT NOT NULL UNIQUE
    );
    "#,
];
