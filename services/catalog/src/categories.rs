//! The categories products are filed under (`/api/categories`). A category with products in it
//! is not deleted: move or delete its products first.

use kassa_platform::{
    access::{Policy, Rule},
    db::{Db, Tx, sql},
    http::{ApiError, Router},
    resource::{Field, Mount, Records, Resource, ResourceSpec, Stored, Unique},
    validate::Text,
};
use serde::{Deserialize, Serialize};

/// Where categories are served.
pub const MOUNTS: &[Mount] = &[Mount::kassa("/api/categories")];

/// A category, as clients send and read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Category {
    /// Unique among categories.
    pub name: Text<100>,
    #[serde(default)]
    pub description: Option<Text<2000>>,
}

pub struct Categories;

const SPEC: ResourceSpec = ResourceSpec {
    kind: "category",
    title: "Category",
    table: "categories",
    fields: &[
        Field::text("name", "name").filtered(),
        Field::text("description", "description"),
    ],
    unique: &[
        Unique {
            constraint: "categories_name",
            field: "name",
            code: "category_name_taken",
            detail: "Another category has this name.",
        },
        // A product was filed under it by a request that committed first.
        Unique {
            constraint: "products_category",
            field: "id",
            code: "category_in_use",
            detail: "Products are filed under this category; move or delete them first.",
        },
    ],
    not_found: "category_not_found",
    conflicts: "",
    undeletable: "Products are filed under this category (`category_in_use`); move or delete them first.",
};

#[async_trait::async_trait]
impl Resource for Categories {
    type Fields = Category;
    const SPEC: &'static ResourceSpec = &SPEC;

    async fn in_write(
        tx: &mut Tx,
        current: Option<&Stored<Category>>,
        category: Option<&Category>,
    ) -> Result<(), ApiError> {
        if let (Some(current), None) = (current, category) {
            let used = sql("SELECT 1 AS one FROM products WHERE category_id = $1 LIMIT 1")
                .bind(current.id)
                .fetch_optional(tx)
                .await?;
            if used.is_some() {
                return Err(ApiError::conflict(
                    "category_in_use",
                    "Products are filed under this category; move or delete them first.",
                ));
            }
        }
        Ok(())
    }
}

/// Anyone reads the categories; the staff change them.
pub const RULES: &[Rule] =
    kassa_platform::record_rules!("/api/categories", Policy::PUBLIC, Policy::STAFF);

/// The categories in `db`.
pub fn records(db: Db) -> Records<Categories> {
    Records::new(db, crate::NAME)
}

/// Their routes.
pub fn api(records: Records<Categories>) -> Router {
    kassa_platform::resource::router(records, MOUNTS)
}
