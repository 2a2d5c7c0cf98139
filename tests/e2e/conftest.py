"""Shared by the end-to-end tests: one Spark session (with Hive support, so it parses Hive
DDL, the dialect of Athena's CREATE EXTERNAL TABLE) for every module that reads with Spark,
and a module's moto Glue behind the proxy that holds it to Glue's own rules."""
import pytest


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from pyspark.sql import SparkSession
    # Hive support: Spark then parses Hive DDL, the dialect of Athena's CREATE EXTERNAL TABLE.
    hive = tmp_path_factory.mktemp("hive")
    session = (SparkSession.builder.master("local[1]").appName("rows-to-parquet-e2e")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.warehouse.dir", str(hive / "warehouse"))
               .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={hive}")
               .enableHiveSupport()
               .getOrCreate())
    yield session
    session.stop()


@pytest.fixture(scope="module")
def glue(moto):
    """The module's `moto` as Glue behind a proxy that refuses a stale `VersionId` and a
    `BatchCreatePartition` of more than 100 partitions (moto enforces neither)."""
    from local_catalog import VersionedGlue
    proxy = VersionedGlue(moto)
    yield proxy
    proxy.stop()
