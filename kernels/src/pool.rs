//! The thread pool that splits products by output rows.
