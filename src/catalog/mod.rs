//! The table catalog, beside the store: it commits what the store wrote. Iceberg tables in
//! the AWS Glue Data Catalog, their metadata, manifests and snapshots made by iceberg-rust;
//! and the Hive tables over target folders.
//!
//! - [`glue`]: iceberg's `Catalog` over this function's Glue client, kept as Iceberg's own
//!   Glue catalog keeps tables.
//! - [`append`]: data files written and committed exactly once per unit of work.
//! - [`identity`]: how a snapshot records the work it committed, read by both.
//! - [`marks`]: how far each stream shard has been committed to a table.
//! - [`hive`]: a target folder's Hive table (`glue_table`): created or given new columns,
//!   and the partitions written registered.
//! - [`places`]: where such a table reads each partition, once a compaction moved it.
//!
//! Uses the store (the table's files go through the same S3 client) and the encoder's
//! settings; the pipeline's other stages know nothing of it.

pub mod append;
pub mod glue;
pub mod hive;
pub mod identity;
pub mod marks;
pub mod places;

use tokio::sync::OnceCell;

/// The Glue client, built on the first table target: a function that only writes folders
/// never pays for it at start.
#[derive(Debug, Default)]
pub struct Glue {
    client: OnceCell<aws_sdk_glue::Client>,
}

impl Glue {
    /// A client built elsewhere (tests point it at a local server).
    pub fn with_client(client: aws_sdk_glue::Client) -> Glue {
        Glue {
            client: OnceCell::new_with(Some(client)),
        }
    }

    /// The client; the first call loads the standard AWS configuration (credentials, region,
    /// `AWS_ENDPOINT_URL_GLUE`) with the S3 client's HTTP stack and timeouts.
    pub async fn client(&self) -> &aws_sdk_glue::Client {
        self.client
            .get_or_init(|| async {
                aws_sdk_glue::Client::new(&crate::store::s3::sdk_config().await)
            })
            .await
    }
}
