//! Why a body is not a valid `WriteRequest` (1.0) or `Request` (2.0), and the small framing error of the field loop.

/// Why a body is not a valid `WriteRequest`. Every variant maps to HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The protobuf framing itself is broken (truncated varint, length past the end, ...).
    #[error("malformed protobuf: {0}")]
    Malformed(&'static str),
    /// A field has a wire type its schema does not allow.
    #[error("malformed protobuf: field {field} of {message} has wire type {wire_type}")]
    WireType {
        /// The message being scanned.
        message: &'static str,
        /// The field number.
        field: u64,
        /// The wire type found.
        wire_type: u8,
    },
    /// A label name or value is not UTF-8.
    #[error("series {series}: label is not valid UTF-8")]
    Utf8 {
        /// Index of the series in the request.
        series: usize,
    },
    /// A series without any label.
    #[error("series {series}: no labels")]
    EmptyLabelSet {
        /// Index of the series in the request.
        series: usize,
    },
    /// A label with an empty name.
    #[error("series {series}: empty label name")]
    EmptyLabelName {
        /// Index of the series in the request.
        series: usize,
    },
    /// Label names not in ascending order.
    #[error("series {series}: labels not sorted ({prev:?} before {name:?})")]
    Unsorted {
        /// Index of the series in the request.
        series: usize,
        /// The label name that came first.
        prev: String,
        /// The label name that should have come first.
        name: String,
    },
    /// The same label name twice in one series.
    #[error("series {series}: duplicate label {name:?}")]
    Duplicate {
        /// Index of the series in the request.
        series: usize,
        /// The repeated name.
        name: String,
    },
    /// A 2.0 symbol is not UTF-8.
    #[error("symbol {index} is not valid UTF-8")]
    SymbolUtf8 {
        /// Its index in the symbols table.
        index: usize,
    },
    /// The first 2.0 symbol is not the empty string.
    #[error("symbols[0] must be the empty string, not {0:?}")]
    FirstSymbol(String),
    /// A 2.0 reference outside the symbols table.
    #[error(
        "series {series}: {what} reference {r} is outside the symbols table ({symbols} symbols)"
    )]
    SymbolRef {
        /// Index of the series in the request.
        series: usize,
        /// What the reference names: a label name or value, a help, a unit.
        what: &'static str,
        /// The reference.
        r: u64,
        /// The size of the table.
        symbols: usize,
    },
    /// A 2.0 `labels_refs` of odd length.
    #[error(
        "series {series}: labels_refs has an odd length ({len}): it must hold name, value pairs"
    )]
    OddRefs {
        /// Index of the series in the request.
        series: usize,
        /// Its length.
        len: usize,
    },
    /// A 2.0 series with both samples and histograms.
    #[error("series {series}: carries both samples and histograms (Remote-Write 2.0 needs one series for each)")]
    SamplesAndHistograms {
        /// Index of the series in the request.
        series: usize,
    },
    /// The 1.0 form of a 2.0 request would be over the decoded-size limit (symbols
    /// referenced many times expand).
    #[error("the 1.0 form of this Remote-Write 2.0 request would be over the limit of {limit} decoded bytes")]
    ConvertedTooLarge {
        /// The limit (`--max-decoded-bytes`).
        limit: u64,
    },
    /// A 2.0 request with the fields of a 1.0 `WriteRequest`.
    #[error("the body is a Remote-Write 1.0 WriteRequest, but the Content-Type says 2.0 (proto=io.prometheus.write.v2.Request)")]
    V1Body,
    /// A 2.0 series without a sample, a histogram or an exemplar.
    #[error("series {series}: carries no sample, histogram or exemplar")]
    NothingCarried {
        /// Index of the series in the request.
        series: usize,
    },
}

impl WireError {
    /// A short, stable name for metrics and logs.
    pub fn as_label(&self) -> &'static str {
        match self {
            WireError::Malformed(_) | WireError::WireType { .. } => "protobuf",
            WireError::Utf8 { .. } => "utf8",
            WireError::EmptyLabelSet { .. } => "empty_labels",
            WireError::EmptyLabelName { .. } => "empty_label_name",
            WireError::Unsorted { .. } => "unsorted_labels",
            WireError::Duplicate { .. } => "duplicate_label",
            WireError::SymbolUtf8 { .. } => "utf8",
            WireError::FirstSymbol(_) => "first_symbol",
            WireError::SymbolRef { .. } => "symbol_ref",
            WireError::OddRefs { .. } => "odd_refs",
            WireError::SamplesAndHistograms { .. } => "samples_and_histograms",
            WireError::NothingCarried { .. } => "empty_series",
            WireError::V1Body => "v1_body",
            WireError::ConvertedTooLarge { .. } => "decoded_too_large",
        }
    }
}

/// A framing error: what the cursor found wrong. Small on purpose (one pointer pair), so
/// the hot field loop moves no large `Result`s; it becomes [`WireError::Malformed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

impl From<Malformed> for WireError {
    fn from(m: Malformed) -> Self {
        WireError::Malformed(m.0)
    }
}
