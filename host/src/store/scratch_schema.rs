//! A throwaway schema on a PostgreSQL server, so that tests and benchmarks sharing one database
//! never see each other's tables, and leave nothing behind even when they fail.

use std::time::Duration;

use chrono::Utc;

use super::StoreError;
use super::postgres::redact;
use super::postgres_tls;

/// How long connecting (and a lock held on the schema when dropping it) may take.
const PATIENCE: Duration = Duration::from_secs(5);

/// A schema of its own: created under a unique name, reached through [`ScratchSchema::url`],
/// dropped with everything in it by [`ScratchSchema::drop_schema`] or, when the caller fails
/// before that, when the value is dropped.
pub struct ScratchSchema {
    admin: tokio_postgres::Client,
    base: String,
    name: String,
    url: String,
    dropped: bool,
}

impl ScratchSchema {
    /// Connects to `base` and creates a schema named after `label`; the error says why not (no
    /// server answering, or the role may not create schemas).
    pub async fn create(base: &str, label: &str) -> Result<ScratchSchema, StoreError> {
        let admin = connect(base).await?;
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let name = format!("{}_{}_{nanos:x}", label.replace('-', "_"), std::process::id());
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .map_err(|e| StoreError::Backend(format!("cannot create schema {name}: {e}")))?;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{name}");
        Ok(ScratchSchema {
            admin,
            base: base.to_string(),
            name,
            url,
            dropped: false,
        })
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection string whose connections use the schema.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The connection that created the schema (for queries that name it).
    pub fn admin(&self) -> &tokio_postgres::Client {
        &self.admin
    }

    /// Drops the schema on its own connection; the way to end a test that passed.
    pub async fn drop_schema(mut self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await;
        self.dropped = true;
    }
}

impl Drop for ScratchSchema {
    /// A failed test unwinds inside its runtime, which cannot drive the admin connection then: the
    /// schema is dropped from a thread with its own runtime and connection, giving up after a few
    /// seconds if a session still open holds a lock on it.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (base, name) = (self.base.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            runtime.block_on(async {
                let sql = format!(
                    "SET lock_timeout = '{}s'; DROP SCHEMA IF EXISTS {name} CASCADE",
                    PATIENCE.as_secs()
                );
                connect(&base)
                    .await?
                    .batch_execute(&sql)
                    .await
                    .map_err(|e| StoreError::Backend(e.to_string()))
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop schema {}: {e}", self.name);
        }
    }
}

/// Connects to `url` with the TLS its `sslmode` asks for, as the store does.
async fn connect(url: &str) -> Result<tokio_postgres::Client, StoreError> {
    let no_server = |why: String| StoreError::Backend(format!("no PostgreSQL at {} ({why})", redact(url)));
    let (config, tls) = postgres_tls::connection(url).map_err(no_server)?;
    match tokio::time::timeout(PATIENCE, config.connect(tls)).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Ok(Err(e)) => Err(no_server(e.to_string())),
        Err(_) => Err(no_server("timed out".into())),
    }
}
