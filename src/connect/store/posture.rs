//! What a bucket says of its own safety: versioning, and the lifecycle rules that move old
//! objects to a cold class and expire noncurrent versions. Read from S3; a local directory
//! has none of it.

/// A bucket's versioning and lifecycle rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Posture {
    /// `Enabled`, `Suspended`, or `None` when versioning was never turned on.
    pub versioning: Option<String>,
    /// The store's prefix in the bucket ("" or ending with `/`): the rules that matter are
    /// those whose prefix holds it.
    pub prefix: String,
    pub rules: Vec<Rule>,
}

/// One lifecycle rule, reduced to what posture checks read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub enabled: bool,
    /// The rule's key prefix ("" for the whole bucket).
    pub prefix: String,
    /// The rule applies only to objects with some tags: drillbook's objects carry none.
    pub filtered_by_tags: bool,
    pub transitions: Vec<Transition>,
    pub noncurrent_expiration_days: Option<u32>,
    pub expiration_days: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub days: u32,
    pub class: String,
}

impl Rule {
    /// Whether it acts on every object under `prefix`: enabled, not limited to tagged
    /// objects, and its own prefix holds `prefix`.
    pub fn covers(&self, prefix: &str) -> bool {
        self.enabled && !self.filtered_by_tags && prefix.starts_with(&self.prefix)
    }
}
