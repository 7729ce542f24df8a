//! The PBX families the gateway knows (SPEC §3, §4) and their CSTA ports.

/// The PBX families the gateway knows (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbxType {
    /// MiVoice 5000 (CSTA 3211; the wizard pre-fills 3201).
    MiVoice5000,
    /// MiVoice Office 400 (CSTA 7001).
    MiVoiceOffice400,
    /// MX-ONE (CSTA 8882).
    MxOne,
    /// MiVoice Business (CTI 5320).
    MiVoiceBusiness,
}

impl PbxType {
    /// Each type by its configuration name.
    pub const ALL: [(&'static str, PbxType); 4] = [
        ("mivoice-5000", PbxType::MiVoice5000),
        ("mivoice-office-400", PbxType::MiVoiceOffice400),
        ("mx-one", PbxType::MxOne),
        ("mivoice-business", PbxType::MiVoiceBusiness),
    ];

    /// The CSTA port the PBX listens on unless told otherwise (SPEC §3).
    pub fn csta_port(self) -> u16 {
        match self {
            PbxType::MiVoice5000 => 3211,
            PbxType::MiVoiceOffice400 => 7001,
            PbxType::MxOne => 8882,
            PbxType::MiVoiceBusiness => 5320,
        }
    }

    /// The CSTA port the wizard pre-fills (SPEC §3: 3201 for MiVoice 5000,
    /// which accepts both).
    pub fn wizard_port(self) -> u16 {
        match self {
            PbxType::MiVoice5000 => 3201,
            other => other.csta_port(),
        }
    }

    /// Its configuration name (`mivoice-5000`, …).
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("?", |(n, _)| n)
    }

    /// The type with this configuration name.
    pub fn from_name(name: &str) -> Option<PbxType> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
    }

    /// What the page shows.
    pub fn label(self) -> &'static str {
        match self {
            PbxType::MiVoice5000 => "MiVoice 5000",
            PbxType::MiVoiceOffice400 => "MiVoice Office 400",
            PbxType::MxOne => "MX-ONE",
            PbxType::MiVoiceBusiness => "MiVoice Business",
        }
    }
}
