//! Status enums declared once: [`status_enum!`] gives each variant its one text form (what the
//! API and the database say), reading in any case with optional other spellings, the list of
//! all variants, `Display` and `FromStr`. Matches on the enum stay exhaustive: code that decides
//! something from a status names every variant, so a new status cannot slip through a `_` arm.

/// A text that names no variant of a status enum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not one of {expected}")]
pub struct UnknownStatus {
    pub text: String,
    pub expected: String,
}

/// Declares a status enum:
///
/// ```
/// kassa_contracts::status_enum! {
///     /// Where an order stands.
///     pub enum OrderStatus {
///         Pending = "PENDING",
///         Cancelled = "CANCELLED" | "CANCELED",
///     }
/// }
/// assert_eq!(OrderStatus::parse("canceled"), Some(OrderStatus::Cancelled));
/// assert_eq!(OrderStatus::Pending.as_str(), "PENDING");
/// ```
#[macro_export]
macro_rules! status_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text form the API and the database use.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }

            /// Reads the text form in any case, or one of the other accepted spellings.
            pub fn parse(text: &str) -> Option<Self> {
                let text = text.trim();
                $(
                    if text.eq_ignore_ascii_case($text) $(|| text.eq_ignore_ascii_case($alias))* {
                        return Some($name::$variant);
                    }
                )+
                None
            }

            /// The OpenAPI schema of the text form an API writes: a string, one of them.
            pub fn schema() -> ::utoipa::openapi::schema::Schema {
                ::utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(::utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::ALL.iter().map(|s| s.as_str())))
                    .into()
            }

            /// The text forms, for messages: `PENDING, PAID`.
            pub fn expected() -> String {
                Self::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::status::UnknownStatus;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse(text).ok_or_else(|| $crate::status::UnknownStatus {
                    text: text.to_owned(),
                    expected: Self::expected(),
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::status_enum! {
        enum Light {
            Red = "RED",
            Green = "GREEN" | "GO",
        }
    }

    #[test]
    fn each_variant_reads_back_from_its_text_in_any_case() {
        for light in Light::ALL {
            assert_eq!(Light::parse(light.as_str()), Some(*light));
            assert_eq!(Light::parse(&light.as_str().to_lowercase()), Some(*light));
            assert_eq!(light.to_string().parse::<Light>(), Ok(*light));
        }
        assert_eq!(Light::parse(" go "), Some(Light::Green));
        let e = "AMBER".parse::<Light>().unwrap_err();
        assert_eq!(e.to_string(), "`AMBER` is not one of RED, GREEN");
        let schema = serde_json::to_value(Light::schema()).unwrap();
        assert_eq!(schema["enum"], serde_json::json!(["RED", "GREEN"]));
    }
}
