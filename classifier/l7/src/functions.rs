//! Function-code tables: for each industrial protocol, every function the parsers report, with its
//! name (as operators write it in policies and as deny reasons print it) and its class.
//!
//! Codes are the protocol's own codes where they fit in a byte (Modbus, DNP3, S7, CIP, IEC-104
//! type ids). Two protocols need a mapping, documented on their tables: BACnet (unconfirmed
//! services are `0x80 | service`) and OPC UA (the index of the service in [`OPCUA`]).
//!
//! Operators select functions by name (`read_coils`), by number (`3`), by class (`read`, or
//! `read_*`: every function of class read), by alias (`download`: the S7 download functions) or by
//! a name prefix (`M_*`: every IEC-104 monitoring type). Names match case-insensitively.

use crate::L7Proto;

/// What a function does, for class selectors and explanations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Reads process data without changing it.
    Read,
    /// Writes process data or configuration.
    Write,
    /// Diagnostics and identification.
    Diagnostics,
    /// Changes the device's state: restarts, stops, operates, commands.
    Control,
    /// Moves program or configuration blocks (download, upload, files).
    Program,
    /// Session and connection management.
    Session,
    /// Monitoring data sent by the outstation (IEC-104 `M_*`, reports).
    Monitor,
    /// A response or acknowledgement.
    Response,
    /// Anything else.
    Other,
}

impl Class {
    /// The selector name of the class.
    pub fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Diagnostics => "diagnostics",
            Class::Control => "control",
            Class::Program => "program",
            Class::Session => "session",
            Class::Monitor => "monitor",
            Class::Response => "response",
            Class::Other => "other",
        }
    }

    const ALL: [Class; 9] = [
        Class::Read,
        Class::Write,
        Class::Diagnostics,
        Class::Control,
        Class::Program,
        Class::Session,
        Class::Monitor,
        Class::Response,
        Class::Other,
    ];
}

/// One function of a protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Code as reported in [`crate::Message::function`].
    pub code: u8,
    /// Policy name.
    pub name: &'static str,
    /// Class.
    pub class: Class,
}

const fn f(code: u8, name: &'static str, class: Class) -> Function {
    Function { code, name, class }
}

use Class::{Control as C, Diagnostics as D, Monitor as M, Other as O, Program as P, Read as R};
use Class::{Response as Rs, Session as S, Write as W};

/// Modbus function codes (exception responses carry `0x80 | code` on the wire; parsers report
/// the plain code with [`crate::Message::exception`] set).
pub const MODBUS: &[Function] = &[
    f(1, "read_coils", R),
    f(2, "read_discrete_inputs", R),
    f(3, "read_holding_registers", R),
    f(4, "read_input_registers", R),
    f(5, "write_single_coil", W),
    f(6, "write_single_register", W),
    f(7, "read_exception_status", D),
    f(8, "diagnostics", D),
    f(11, "get_comm_event_counter", D),
    f(12, "get_comm_event_log", D),
    f(15, "write_multiple_coils", W),
    f(16, "write_multiple_registers", W),
    f(17, "report_server_id", D),
    f(20, "read_file_record", R),
    f(21, "write_file_record", W),
    f(22, "mask_write_register", W),
    // Reads and writes: class write, so `read_*` never admits it.
    f(23, "read_write_multiple_registers", W),
    f(24, "read_fifo_queue", R),
    f(43, "encapsulated_interface_transport", D),
];

/// DNP3 application-layer function codes.
pub const DNP3: &[Function] = &[
    f(0, "confirm", Rs),
    f(1, "read", R),
    f(2, "write", W),
    f(3, "select", C),
    f(4, "operate", C),
    f(5, "direct_operate", C),
    f(6, "direct_operate_nr", C),
    f(7, "immed_freeze", C),
    f(8, "immed_freeze_nr", C),
    f(9, "freeze_clear", C),
    f(10, "freeze_clear_nr", C),
    f(11, "freeze_at_time", C),
    f(12, "freeze_at_time_nr", C),
    f(13, "cold_restart", C),
    f(14, "warm_restart", C),
    f(15, "initialize_data", C),
    f(16, "initialize_application", C),
    f(17, "start_application", C),
    f(18, "stop_application", C),
    f(19, "save_configuration", P),
    f(20, "enable_unsolicited", W),
    f(21, "disable_unsolicited", W),
    f(22, "assign_class", W),
    f(23, "delay_measure", D),
    f(24, "record_current_time", D),
    f(25, "open_file", P),
    f(26, "close_file", P),
    f(27, "delete_file", P),
    f(28, "get_file_info", P),
    f(29, "authenticate_file", P),
    f(30, "abort_file", P),
    f(31, "activate_config", P),
    f(32, "authenticate_req", S),
    f(33, "authenticate_err", S),
    f(129, "response", Rs),
    f(130, "unsolicited_response", Rs),
    f(131, "authenticate_resp", S),
];

/// S7comm functions: job parameter codes, plus `0xe0 | group` for userdata (ROSCTR 7) requests.
pub const S7: &[Function] = &[
    f(0x00, "cpu_services", D),
    f(0x04, "read_var", R),
    f(0x05, "write_var", W),
    f(0x1a, "request_download", P),
    f(0x1b, "download_block", P),
    f(0x1c, "download_ended", P),
    f(0x1d, "start_upload", P),
    f(0x1e, "upload", P),
    f(0x1f, "end_upload", P),
    f(0x28, "pi_service", C),
    f(0x29, "plc_stop", C),
    f(0xf0, "setup_communication", S),
    f(0xe1, "userdata_programmer", D),
    f(0xe2, "userdata_cyclic", R),
    f(0xe3, "userdata_block", D),
    f(0xe4, "userdata_cpu", D),
    f(0xe5, "userdata_security", S),
    f(0xe7, "userdata_time", D),
];

/// CIP service codes (requests; responses set bit 7 on the wire).
pub const CIP: &[Function] = &[
    f(0x01, "get_attributes_all", R),
    f(0x02, "set_attributes_all", W),
    f(0x03, "get_attribute_list", R),
    f(0x04, "set_attribute_list", W),
    f(0x05, "reset", C),
    f(0x06, "start", C),
    f(0x07, "stop", C),
    f(0x08, "create", W),
    f(0x09, "delete", W),
    f(0x0a, "multiple_service_packet", O),
    f(0x0d, "apply_attributes", W),
    f(0x0e, "get_attribute_single", R),
    f(0x10, "set_attribute_single", W),
    f(0x11, "find_next_object_instance", R),
    f(0x15, "restore", P),
    f(0x16, "save", P),
    f(0x17, "no_operation", D),
    f(0x18, "get_member", R),
    f(0x19, "set_member", W),
    f(0x1a, "insert_member", W),
    f(0x1b, "remove_member", W),
    f(0x1c, "group_sync", C),
    f(0x4b, "execute_pccc", O),
    f(0x4c, "read_tag", R),
    f(0x4d, "write_tag", W),
    f(0x4e, "forward_close", S),
    f(0x52, "unconnected_send", O),
    f(0x53, "write_tag_fragmented", W),
    f(0x54, "forward_open", S),
    f(0x5b, "large_forward_open", S),
];

/// BACnet services: confirmed service choices as they are, unconfirmed ones as `0x80 | choice`.
pub const BACNET: &[Function] = &[
    f(0, "acknowledge_alarm", W),
    f(1, "confirmed_cov_notification", M),
    f(2, "confirmed_event_notification", M),
    f(3, "get_alarm_summary", R),
    f(4, "get_enrollment_summary", R),
    f(5, "subscribe_cov", R),
    f(6, "atomic_read_file", P),
    f(7, "atomic_write_file", P),
    f(8, "add_list_element", W),
    f(9, "remove_list_element", W),
    f(10, "create_object", W),
    f(11, "delete_object", W),
    f(12, "read_property", R),
    f(14, "read_property_multiple", R),
    f(15, "write_property", W),
    f(16, "write_property_multiple", W),
    f(17, "device_communication_control", C),
    f(18, "confirmed_private_transfer", O),
    f(19, "confirmed_text_message", O),
    f(20, "reinitialize_device", C),
    f(26, "read_range", R),
    f(28, "subscribe_cov_property", R),
    f(29, "get_event_information", R),
    f(0x80, "i_am", D),
    f(0x81, "i_have", D),
    f(0x82, "unconfirmed_cov_notification", M),
    f(0x83, "unconfirmed_event_notification", M),
    f(0x84, "unconfirmed_private_transfer", O),
    f(0x85, "unconfirmed_text_message", O),
    f(0x86, "time_synchronization", C),
    f(0x87, "who_has", D),
    f(0x88, "who_is", D),
    f(0x89, "utc_time_synchronization", C),
    f(0x8a, "write_group", W),
];

/// IEC 60870-5-104 ASDU type identifiers.
pub const IEC104: &[Function] = &[
    f(1, "M_SP_NA_1", M),
    f(3, "M_DP_NA_1", M),
    f(5, "M_ST_NA_1", M),
    f(7, "M_BO_NA_1", M),
    f(9, "M_ME_NA_1", M),
    f(11, "M_ME_NB_1", M),
    f(13, "M_ME_NC_1", M),
    f(15, "M_IT_NA_1", M),
    f(20, "M_PS_NA_1", M),
    f(21, "M_ME_ND_1", M),
    f(30, "M_SP_TB_1", M),
    f(31, "M_DP_TB_1", M),
    f(32, "M_ST_TB_1", M),
    f(33, "M_BO_TB_1", M),
    f(34, "M_ME_TD_1", M),
    f(35, "M_ME_TE_1", M),
    f(36, "M_ME_TF_1", M),
    f(37, "M_IT_TB_1", M),
    f(38, "M_EP_TD_1", M),
    f(39, "M_EP_TE_1", M),
    f(40, "M_EP_TF_1", M),
    f(45, "C_SC_NA_1", C),
    f(46, "C_DC_NA_1", C),
    f(47, "C_RC_NA_1", C),
    f(48, "C_SE_NA_1", C),
    f(49, "C_SE_NB_1", C),
    f(50, "C_SE_NC_1", C),
    f(51, "C_BO_NA_1", C),
    f(58, "C_SC_TA_1", C),
    f(59, "C_DC_TA_1", C),
    f(60, "C_RC_TA_1", C),
    f(61, "C_SE_TA_1", C),
    f(62, "C_SE_TB_1", C),
    f(63, "C_SE_TC_1", C),
    f(64, "C_BO_TA_1", C),
    f(70, "M_EI_NA_1", M),
    f(100, "C_IC_NA_1", R),
    f(101, "C_CI_NA_1", R),
    f(102, "C_RD_NA_1", R),
    f(103, "C_CS_NA_1", W),
    f(104, "C_TS_NA_1", D),
    f(105, "C_RP_NA_1", C),
    f(106, "C_CD_NA_1", D),
    f(107, "C_TS_TA_1", D),
    f(110, "P_ME_NA_1", W),
    f(111, "P_ME_NB_1", W),
    f(112, "P_ME_NC_1", W),
    f(113, "P_AC_NA_1", W),
    f(120, "F_FR_NA_1", P),
    f(121, "F_SR_NA_1", P),
    f(122, "F_SC_NA_1", P),
    f(123, "F_LS_NA_1", P),
    f(124, "F_AF_NA_1", P),
    f(125, "F_SG_NA_1", P),
    f(126, "F_DR_TA_1", P),
];

/// OPC UA services. The code is the index in this table; [`OPCUA_NODE_IDS`] holds the numeric
/// node id of each service's request encoding (the response is that id + 3).
pub const OPCUA: &[Function] = &[
    f(0, "find_servers", D),
    f(1, "get_endpoints", D),
    f(2, "open_secure_channel", S),
    f(3, "close_secure_channel", S),
    f(4, "create_session", S),
    f(5, "activate_session", S),
    f(6, "close_session", S),
    f(7, "cancel", S),
    f(8, "add_nodes", W),
    f(9, "add_references", W),
    f(10, "delete_nodes", W),
    f(11, "delete_references", W),
    f(12, "browse", R),
    f(13, "browse_next", R),
    f(14, "translate_browse_paths", R),
    f(15, "register_nodes", R),
    f(16, "unregister_nodes", R),
    f(17, "read", R),
    f(18, "history_read", R),
    f(19, "write", W),
    f(20, "history_update", W),
    f(21, "call", C),
    f(22, "create_monitored_items", R),
    f(23, "modify_monitored_items", R),
    f(24, "set_monitoring_mode", R),
    f(25, "delete_monitored_items", R),
    f(26, "create_subscription", R),
    f(27, "modify_subscription", R),
    f(28, "set_publishing_mode", R),
    f(29, "publish", R),
    f(30, "republish", R),
    f(31, "transfer_subscriptions", R),
    f(32, "delete_subscriptions", R),
    f(33, "hello", S),
];

/// Request node ids (namespace 0) of the services in [`OPCUA`], by index; `hello` has none.
pub const OPCUA_NODE_IDS: &[u16] = &[
    422, 428, 446, 452, 461, 467, 473, 479, 488, 494, 500, 506, 527, 533, 554, 560, 566, 631, 664,
    673, 700, 712, 751, 763, 769, 781, 787, 793, 799, 826, 832, 841, 847,
];

/// The OPC UA function code of a service node id, and whether it is the response.
pub fn opcua_service(node_id: u32) -> Option<(u8, bool)> {
    OPCUA_NODE_IDS.iter().enumerate().find_map(|(i, &id)| {
        let i = u8::try_from(i).ok()?;
        if node_id == u32::from(id) {
            Some((i, false))
        } else if node_id == u32::from(id) + 3 {
            Some((i, true))
        } else {
            None
        }
    })
}

/// Named groups beyond classes.
const ALIASES: &[(L7Proto, &str, &[&str])] = &[
    (
        L7Proto::S7comm,
        "download",
        &["request_download", "download_block", "download_ended"],
    ),
    (
        L7Proto::S7comm,
        "upload",
        &["start_upload", "upload", "end_upload"],
    ),
    (L7Proto::S7comm, "stop", &["plc_stop"]),
    (L7Proto::Dnp3, "restart", &["cold_restart", "warm_restart"]),
    (
        L7Proto::Dnp3,
        "operate_any",
        &["select", "operate", "direct_operate", "direct_operate_nr"],
    ),
];

/// The function table of a protocol (empty for protocols without function-code conduits).
pub fn table(proto: L7Proto) -> &'static [Function] {
    match proto {
        L7Proto::Modbus => MODBUS,
        L7Proto::Dnp3 => DNP3,
        L7Proto::S7comm => S7,
        L7Proto::EnipCip => CIP,
        L7Proto::Bacnet => BACNET,
        L7Proto::Iec104 => IEC104,
        L7Proto::OpcUa => OPCUA,
        _ => &[],
    }
}

/// The function with this code, if the table knows it.
pub fn lookup(proto: L7Proto, code: u8) -> Option<&'static Function> {
    table(proto).iter().find(|f| f.code == code)
}

/// The name of a function code, or `"unknown"`.
pub fn name(proto: L7Proto, code: u8) -> &'static str {
    lookup(proto, code).map_or("unknown", |f| f.name)
}

/// Why a selector did not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectorError {
    /// Neither a name, a class, an alias, a pattern nor a number of the protocol.
    Unknown,
    /// A pattern that matches no function.
    MatchesNothing,
}

/// Resolves one selector (name, number, class, alias, `prefix_*` pattern) to function codes.
pub fn resolve(proto: L7Proto, selector: &str) -> Result<Vec<u8>, SelectorError> {
    let table = table(proto);
    let sel = selector.trim();
    if let Ok(n) = sel.parse::<u8>() {
        return Ok(vec![n]);
    }
    if let Some(hex) = sel.strip_prefix("0x").or_else(|| sel.strip_prefix("0X"))
        && let Ok(n) = u8::from_str_radix(hex, 16)
    {
        return Ok(vec![n]);
    }
    if let Some(f) = table.iter().find(|f| f.name.eq_ignore_ascii_case(sel)) {
        return Ok(vec![f.code]);
    }
    let class_of = |s: &str| {
        Class::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
    };
    if let Some(c) = class_of(sel) {
        return non_empty(
            table
                .iter()
                .filter(|f| f.class == c)
                .map(|f| f.code)
                .collect(),
        );
    }
    if let Some((_, _, names)) = ALIASES
        .iter()
        .find(|(p, a, _)| *p == proto && a.eq_ignore_ascii_case(sel))
    {
        return Ok(table
            .iter()
            .filter(|f| names.contains(&f.name))
            .map(|f| f.code)
            .collect());
    }
    if let Some(prefix) = sel.strip_suffix('*') {
        if let Some(c) = class_of(prefix.trim_end_matches('_')) {
            return non_empty(
                table
                    .iter()
                    .filter(|f| f.class == c)
                    .map(|f| f.code)
                    .collect(),
            );
        }
        let lower = prefix.to_ascii_lowercase();
        return non_empty(
            table
                .iter()
                .filter(|f| f.name.to_ascii_lowercase().starts_with(&lower))
                .map(|f| f.code)
                .collect(),
        );
    }
    Err(SelectorError::Unknown)
}

fn non_empty(v: Vec<u8>) -> Result<Vec<u8>, SelectorError> {
    if v.is_empty() {
        Err(SelectorError::MatchesNothing)
    } else {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_unique_codes_and_names() {
        for p in L7Proto::ALL {
            let t = table(p);
            for (i, a) in t.iter().enumerate() {
                for b in &t[i + 1..] {
                    assert_ne!(a.code, b.code, "{p}: {} and {}", a.name, b.name);
                    assert!(!a.name.eq_ignore_ascii_case(b.name), "{p}: {}", a.name);
                }
            }
        }
        assert_eq!(OPCUA_NODE_IDS.len() + 1, OPCUA.len());
    }

    #[test]
    fn selectors_resolve() {
        let reads = resolve(L7Proto::Modbus, "read_*").unwrap();
        assert_eq!(reads, vec![1, 2, 3, 4, 20, 24]);
        assert_eq!(resolve(L7Proto::Modbus, "read").unwrap(), reads);
        assert!(!reads.contains(&23), "read_write is a write");
        assert_eq!(
            resolve(L7Proto::Modbus, "Write_Single_Register").unwrap(),
            vec![6]
        );
        assert_eq!(resolve(L7Proto::Modbus, "0x2b").unwrap(), vec![43]);
        assert_eq!(
            resolve(L7Proto::S7comm, "download").unwrap(),
            vec![0x1a, 0x1b, 0x1c]
        );
        let monitor = resolve(L7Proto::Iec104, "M_*").unwrap();
        assert!(monitor.contains(&1) && monitor.contains(&70) && !monitor.contains(&45));
        assert_eq!(
            resolve(L7Proto::Modbus, "read_coil"),
            Err(SelectorError::Unknown)
        );
        assert_eq!(
            resolve(L7Proto::Modbus, "zz_*"),
            Err(SelectorError::MatchesNothing)
        );
        assert_eq!(opcua_service(631), Some((17, false)));
        assert_eq!(opcua_service(634), Some((17, true)));
        assert_eq!(name(L7Proto::OpcUa, 19), "write");
    }
}
