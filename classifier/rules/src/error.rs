//! Why a rule list was rejected. A rejected list never replaces the running table.

/// The rule field an error refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// [`crate::Rule::id`].
    Id,
    /// [`crate::Rule::src`].
    Src,
    /// [`crate::Rule::dst`].
    Dst,
    /// [`crate::Rule::sport`].
    Sport,
    /// [`crate::Rule::dport`].
    Dport,
    /// The rule list as a whole (size budgets).
    Rules,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Id => "id",
            Field::Src => "src",
            Field::Dst => "dst",
            Field::Sport => "sport",
            Field::Dport => "dport",
            Field::Rules => "rules",
        })
    }
}

/// A rule list that [`crate::compile`] refused, with the index of the first offending rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A prefix whose length exceeds its family's width or that has bits set beyond its length.
    #[error("rule {index}: field {field}: malformed prefix {prefix}")]
    MalformedPrefix {
        /// Index of the rule in the list.
        index: usize,
        /// `src` or `dst`.
        field: Field,
        /// The prefix as written.
        prefix: String,
    },
    /// A port range with `lo > hi`.
    #[error("rule {index}: field {field}: empty range {lo}..={hi}")]
    EmptyRange {
        /// Index of the rule in the list.
        index: usize,
        /// `sport` or `dport`.
        field: Field,
        /// First value.
        lo: u16,
        /// Last value.
        hi: u16,
    },
    /// A condition no packet can satisfy (empty prefix set, or IPv4 source with IPv6 destination).
    #[error("rule {index}: field {field}: can never match ({reason})")]
    NeverMatches {
        /// Index of the rule in the list.
        index: usize,
        /// The field that makes the rule unmatchable.
        field: Field,
        /// Human-readable reason.
        reason: &'static str,
    },
    /// Two rules share an id, so decisions could not say which one matched.
    #[error("rule {index}: field id: duplicate id {id} (first used by rule {first})")]
    DuplicateId {
        /// Index of the second rule with this id.
        index: usize,
        /// The id.
        id: u32,
        /// Index of the first rule with this id.
        first: usize,
    },
    /// The list, or its expansion into prefix-set cross products, exceeds the configured budget.
    #[error("rule {index}: field {field}: over the size budget ({what} {limit})")]
    OverBudget {
        /// Index of the first rule that does not fit.
        index: usize,
        /// `rules`, or the field whose prefix set overflowed the expansion budget.
        field: Field,
        /// Which budget.
        what: &'static str,
        /// The configured limit.
        limit: usize,
    },
}

impl CompileError {
    /// Index of the offending rule.
    pub fn index(&self) -> usize {
        match self {
            CompileError::MalformedPrefix { index, .. }
            | CompileError::EmptyRange { index, .. }
            | CompileError::NeverMatches { index, .. }
            | CompileError::DuplicateId { index, .. }
            | CompileError::OverBudget { index, .. } => *index,
        }
    }

    /// The field the error refers to.
    pub fn field(&self) -> Field {
        match self {
            CompileError::MalformedPrefix { field, .. }
            | CompileError::EmptyRange { field, .. }
            | CompileError::NeverMatches { field, .. }
            | CompileError::OverBudget { field, .. } => *field,
            CompileError::DuplicateId { .. } => Field::Id,
        }
    }
}
