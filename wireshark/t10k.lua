-- Wireshark dissector for the t10k-lab protocol (version 3).
-- GENERATED from protocol/layouts.py by wireshark/generate.py: do not edit.
-- Use: wireshark -X lua_script:t10k.lua capture.pcap   or copy it to your plugins folder.

local t10k = Proto("t10k", "t10k-lab T10000 emulator protocol")
local fields = {}

local E_MessageType = {[1] = "KEYS_AVAILABLE", [2] = "KEY_REQUEST", [3] = "DEVICE_KEY_PACKAGE", [4] = "MEDIA_KEY_PACKAGE", [5] = "NO_PACKAGE", [6] = "KEY_ACK", [7] = "ERROR_REPORT", [8] = "CLEAR_KEYS", [32] = "WRITE_EKT", [33] = "WRITE_OKT", [34] = "READ_STATUS", [35] = "CLEAR_ERROR", [36] = "RESYNC", [48] = "MGMT_RESULT", [49] = "TOKEN_STATUS", [50] = "MGMT_CHALLENGE", [64] = "VOP_STATUS_REQUEST", [65] = "VOP_STATUS", [66] = "VOP_RESET_DRIVE", [67] = "VOP_RESULT", [68] = "VOP_LOAD", [69] = "VOP_UNLOAD", [70] = "VOP_CHALLENGE_REQUEST", [71] = "VOP_CHALLENGE"}
local E_EncryptionLed = {[1] = "GREEN", [2] = "FLASHING_GREEN", [3] = "AMBER", [4] = "RED", [5] = "FLASHING_RED"}
local E_ErrorCode = {[24841] = "MISSING_KEY", [24842] = "KEY_MESSAGE_DECRYPTION"}
local E_KeyKind = {[1] = "DEVICE", [2] = "MEDIA"}
local E_MgmtStatus = {[0] = "OK", [1] = "BAD_REQUEST", [2] = "AUTH_FAILED", [3] = "REPLAYED", [4] = "REFUSED", [5] = "INTERNAL"}
local E_NoPackageReason = {[1] = "NOT_HELD", [2] = "DELIVERED", [3] = "WRONG_KIND"}
local E_TokenLed = {[0] = "OFF", [1] = "FLASHING_GREEN", [2] = "SOLID_GREEN", [3] = "FLASHING_RED"}
local E_TokenMode = {[0] = "EMPTY", [1] = "EKT", [2] = "OKT"}
local E_VopStatusCode = {[0] = "OK", [1] = "REFUSED", [2] = "BAD_REQUEST"}
local E_Wrapping = {[1] = "PCKEY", [2] = "DEVICE_KEY"}
local F_magic = ProtoField.bytes("t10k.magic", "magic")
local F_version = ProtoField.uint8("t10k.version", "version")
local F_type = ProtoField.uint8("t10k.type", "type", base.HEX, E_MessageType)
local F_flags = ProtoField.uint16("t10k.flags", "flags", base.HEX)
local F_sequence = ProtoField.uint32("t10k.sequence", "sequence")
local F_body_length = ProtoField.uint32("t10k.body_length", "body length")
local F_counter = ProtoField.uint64("t10k.auth.counter", "replay counter")
local F_sealed = ProtoField.bytes("t10k.auth.sealed", "sealed body (AES-256-GCM ciphertext and tag)")
local F_nonce = ProtoField.bytes("t10k.auth.nonce", "nonce")
for _, f in ipairs({F_magic, F_version, F_type, F_flags, F_sequence, F_body_length, F_counter, F_sealed, F_nonce}) do
  table.insert(fields, f) end
local F_token_id = ProtoField.bytes("t10k.token_id", "token id")
table.insert(fields, F_token_id)
local F_mode = ProtoField.uint8("t10k.mode", "mode", base.DEC, E_TokenMode)
table.insert(fields, F_mode)
local F_timestamp = ProtoField.uint64("t10k.timestamp", "timestamp", base.DEC)
table.insert(fields, F_timestamp)
local F_csn_count = ProtoField.uint32("t10k.csn_count", "csn count", base.DEC)
table.insert(fields, F_csn_count)
local F_csn_filter = ProtoField.bytes("t10k.csn_filter", "csn filter")
table.insert(fields, F_csn_filter)
local F_signature = ProtoField.bytes("t10k.signature", "signature")
table.insert(fields, F_signature)
local F_csn = ProtoField.bytes("t10k.csn", "csn")
table.insert(fields, F_csn)
local F_kind = ProtoField.uint8("t10k.kind", "kind", base.DEC, E_KeyKind)
table.insert(fields, F_kind)
local F_held_timestamp = ProtoField.uint64("t10k.held_timestamp", "held timestamp", base.DEC)
table.insert(fields, F_held_timestamp)
local F_device_key_id = ProtoField.bytes("t10k.device_key_id", "device key id")
table.insert(fields, F_device_key_id)
local F_wrapping = ProtoField.uint8("t10k.wrapping", "wrapping", base.DEC, E_Wrapping)
table.insert(fields, F_wrapping)
local F_wrapping_key_id = ProtoField.bytes("t10k.wrapping_key_id", "wrapping key id")
table.insert(fields, F_wrapping_key_id)
local F_nonce = ProtoField.bytes("t10k.nonce", "nonce")
table.insert(fields, F_nonce)
local F_wrapped = ProtoField.bytes("t10k.wrapped", "wrapped")
table.insert(fields, F_wrapped)
local F_okt_timestamp = ProtoField.uint64("t10k.okt_timestamp", "okt timestamp", base.DEC)
table.insert(fields, F_okt_timestamp)
local F_write_key_id = ProtoField.bytes("t10k.write_key_id", "write key id")
table.insert(fields, F_write_key_id)
local F_media_key_package_receipt = ProtoField.bytes("t10k.media_key_package.receipt", "receipt")
table.insert(fields, F_media_key_package_receipt)
local F_media_keys = ProtoField.uint32("t10k.media_keys_count", "media keys (count)")
table.insert(fields, F_media_keys)
local F_reason = ProtoField.uint8("t10k.reason", "reason", base.DEC, E_NoPackageReason)
table.insert(fields, F_reason)
local F_key_ack_receipt = ProtoField.bytes("t10k.key_ack.receipt", "receipt")
table.insert(fields, F_key_ack_receipt)
local F_error_code = ProtoField.uint32("t10k.error_code", "error code", base.HEX, E_ErrorCode)
table.insert(fields, F_error_code)
local F_key_id = ProtoField.bytes("t10k.key_id", "key id")
table.insert(fields, F_key_id)
local F_mac = ProtoField.bytes("t10k.mac", "mac")
table.insert(fields, F_mac)
local F_part = ProtoField.uint16("t10k.part", "part", base.DEC)
table.insert(fields, F_part)
local F_parts = ProtoField.uint16("t10k.parts", "parts", base.DEC)
table.insert(fields, F_parts)
local F_authorizations = ProtoField.uint32("t10k.authorizations_count", "authorizations (count)")
table.insert(fields, F_authorizations)
local F_entries = ProtoField.uint32("t10k.entries_count", "entries (count)")
table.insert(fields, F_entries)
local F_announcement = ProtoField.bytes("t10k.announcement", "announcement")
table.insert(fields, F_announcement)
local F_pool = ProtoField.string("t10k.pool", "pool")
table.insert(fields, F_pool)
local F_challenge = ProtoField.bytes("t10k.challenge", "challenge")
table.insert(fields, F_challenge)
local F_mgmt_result_status = ProtoField.uint8("t10k.mgmt_result.status", "status", base.DEC, E_MgmtStatus)
table.insert(fields, F_mgmt_result_status)
local F_message = ProtoField.string("t10k.message", "message")
table.insert(fields, F_message)
local F_led3 = ProtoField.uint8("t10k.led3", "led3", base.DEC, E_TokenLed)
table.insert(fields, F_led3)
local F_error_led = ProtoField.uint8("t10k.error_led", "error led", base.DEC, E_TokenLed)
table.insert(fields, F_error_led)
local F_packages_held = ProtoField.uint32("t10k.packages_held", "packages held", base.DEC)
table.insert(fields, F_packages_held)
local F_acknowledged = ProtoField.uint32("t10k.acknowledged", "acknowledged", base.DEC)
table.insert(fields, F_acknowledged)
local F_errors = ProtoField.uint32("t10k.errors_count", "errors (count)")
table.insert(fields, F_errors)
local F_last_write_counter = ProtoField.uint64("t10k.last_write_counter", "last write counter", base.DEC)
table.insert(fields, F_last_write_counter)
local F_encrypting_model = ProtoField.uint8("t10k.encrypting_model", "encrypting model", base.DEC)
table.insert(fields, F_encrypting_model)
local F_led = ProtoField.uint8("t10k.led", "led", base.DEC, E_EncryptionLed)
table.insert(fields, F_led)
local F_encryption_enabled = ProtoField.uint8("t10k.encryption_enabled", "encryption enabled", base.DEC)
table.insert(fields, F_encryption_enabled)
local F_reset = ProtoField.uint8("t10k.reset", "reset", base.DEC)
table.insert(fields, F_reset)
local F_need_okt = ProtoField.uint8("t10k.need_okt", "need okt", base.DEC)
table.insert(fields, F_need_okt)
local F_holding_keys = ProtoField.uint8("t10k.holding_keys", "holding keys", base.DEC)
table.insert(fields, F_holding_keys)
local F_device_key_timestamp = ProtoField.uint64("t10k.device_key_timestamp", "device key timestamp", base.DEC)
table.insert(fields, F_device_key_timestamp)
local F_media_key_count = ProtoField.uint8("t10k.media_key_count", "media key count", base.DEC)
table.insert(fields, F_media_key_count)
local F_vop_result_status = ProtoField.uint8("t10k.vop_result.status", "status", base.DEC, E_VopStatusCode)
table.insert(fields, F_vop_result_status)
local F_volser = ProtoField.string("t10k.volser", "volser")
table.insert(fields, F_volser)
local F_hash_count = ProtoField.uint8("t10k.hash_count", "hash count", base.DEC)
table.insert(fields, F_hash_count)
local F_bits = ProtoField.bytes("t10k.bits", "bits")
table.insert(fields, F_bits)
local F_package = ProtoField.bytes("t10k.package", "package")
table.insert(fields, F_package)
local F_receipt_hash = ProtoField.bytes("t10k.receipt_hash", "receipt hash")
table.insert(fields, F_receipt_hash)
local F_report_key = ProtoField.bytes("t10k.report_key", "report key")
table.insert(fields, F_report_key)
local F_clear_authorizations = ProtoField.uint32("t10k.clear_authorizations_count", "clear authorizations (count)")
table.insert(fields, F_clear_authorizations)
local F_reported_at = ProtoField.uint64("t10k.reported_at", "reported at", base.DEC)
table.insert(fields, F_reported_at)
t10k.fields = fields

local parse_CsnFilter, parse_WrappedReceipt, parse_WrappedMediaKey, parse_ClearAuthorization, parse_EktEntry, parse_Announcement
local parse_OktEntry, parse_TokenError, parse_KEYS_AVAILABLE, parse_KEY_REQUEST, parse_DEVICE_KEY_PACKAGE, parse_MEDIA_KEY_PACKAGE
local parse_NO_PACKAGE, parse_KEY_ACK, parse_ERROR_REPORT, parse_CLEAR_KEYS, parse_WRITE_EKT, parse_WRITE_OKT
local parse_READ_STATUS, parse_CLEAR_ERROR, parse_RESYNC, parse_MGMT_RESULT, parse_TOKEN_STATUS, parse_MGMT_CHALLENGE
local parse_VOP_STATUS_REQUEST, parse_VOP_STATUS, parse_VOP_RESET_DRIVE, parse_VOP_RESULT, parse_VOP_LOAD, parse_VOP_UNLOAD
local parse_VOP_CHALLENGE_REQUEST, parse_VOP_CHALLENGE

parse_CsnFilter = function(tvb, off, tree, limit)
  tree:add(F_hash_count, tvb(off, 1)); off = off + 1
  do local n = tvb(off, 2):uint(); if n > 0 then tree:add(F_bits, tvb(off + 2, n)) end; off = off + 2 + n end
  return off
end

parse_WrappedReceipt = function(tvb, off, tree, limit)
  tree:add(F_nonce, tvb(off, 12)); off = off + 12
  tree:add(F_wrapped, tvb(off, 32)); off = off + 32
  return off
end

parse_WrappedMediaKey = function(tvb, off, tree, limit)
  tree:add(F_key_id, tvb(off, 8)); off = off + 8
  tree:add(F_nonce, tvb(off, 12)); off = off + 12
  tree:add(F_wrapped, tvb(off, 48)); off = off + 48
  return off
end

parse_ClearAuthorization = function(tvb, off, tree, limit)
  tree:add(F_csn, tvb(off, 8)); off = off + 8
  tree:add(F_device_key_id, tvb(off, 8)); off = off + 8
  tree:add(F_mac, tvb(off, 16)); off = off + 16
  return off
end

parse_EktEntry = function(tvb, off, tree, limit)
  do local sub = tree:add(t10k, tvb(off, limit - off), "package"); off = parse_DEVICE_KEY_PACKAGE(tvb, off, sub, limit) end
  tree:add(F_receipt_hash, tvb(off, 32)); off = off + 32
  tree:add(F_report_key, tvb(off, 32)); off = off + 32
  do local n = tvb(off, 1):uint(); tree:add(F_clear_authorizations, tvb(off, 1)); off = off + 1
    for i = 1, n do local sub = tree:add(t10k, tvb(off, limit - off), "clear_authorizations " .. i); off = parse_ClearAuthorization(tvb, off, sub, limit) end end
  return off
end

parse_Announcement = function(tvb, off, tree, limit)
  tree:add(F_csn_count, tvb(off, 4)); off = off + 4
  do local sub = tree:add(t10k, tvb(off, limit - off), "csn_filter"); off = parse_CsnFilter(tvb, off, sub, limit) end
  tree:add(F_signature, tvb(off, 64)); off = off + 64
  return off
end

parse_OktEntry = function(tvb, off, tree, limit)
  do local sub = tree:add(t10k, tvb(off, limit - off), "package"); off = parse_MEDIA_KEY_PACKAGE(tvb, off, sub, limit) end
  tree:add(F_receipt_hash, tvb(off, 32)); off = off + 32
  tree:add(F_report_key, tvb(off, 32)); off = off + 32
  do local n = tvb(off, 1):uint(); tree:add(F_clear_authorizations, tvb(off, 1)); off = off + 1
    for i = 1, n do local sub = tree:add(t10k, tvb(off, limit - off), "clear_authorizations " .. i); off = parse_ClearAuthorization(tvb, off, sub, limit) end end
  return off
end

parse_TokenError = function(tvb, off, tree, limit)
  tree:add(F_csn, tvb(off, 8)); off = off + 8
  tree:add(F_error_code, tvb(off, 4)); off = off + 4
  tree:add(F_key_id, tvb(off, 8)); off = off + 8
  tree:add(F_reported_at, tvb(off, 8)); off = off + 8
  return off
end

parse_KEYS_AVAILABLE = function(tvb, off, tree, limit)
  tree:add(F_token_id, tvb(off, 8)); off = off + 8
  tree:add(F_mode, tvb(off, 1)); off = off + 1
  tree:add(F_timestamp, tvb(off, 8)); off = off + 8
  tree:add(F_csn_count, tvb(off, 4)); off = off + 4
  do local sub = tree:add(t10k, tvb(off, limit - off), "csn_filter"); off = parse_CsnFilter(tvb, off, sub, limit) end
  tree:add(F_signature, tvb(off, 64)); off = off + 64
  return off
end

parse_KEY_REQUEST = function(tvb, off, tree, limit)
  tree:add(F_csn, tvb(off, 8)); off = off + 8
  tree:add(F_kind, tvb(off, 1)); off = off + 1
  tree:add(F_held_timestamp, tvb(off, 8)); off = off + 8
  return off
end

parse_DEVICE_KEY_PACKAGE = function(tvb, off, tree, limit)
  tree:add(F_csn, tvb(off, 8)); off = off + 8
  tree:add(F_timestamp, tvb(off, 8)); off = off + 8
  tree:add(F_device_key_id, tvb(off, 8)); off = off + 8
  tree:add(F_wrapping, tvb(off, 1)); off = off + 1
  tree:add(F_wrapping_key_id, tvb(off, 8)); off = off + 8
  tree:add(F_nonce, tvb(off, 12)); off = off + 12
  tree:add(F_wrapped, tvb(off, 96)); off = off + 96
  return off
end

parse_MEDIA_KEY_PACKAGE = function(tvb, off, tree, limit)
  tree:add(F_csn, tvb(off, 8)); off = off + 8
  tree:add(F_okt_timestamp, tvb(off, 8)); off = off + 8
  tree:add(F_device_key_id, tvb(off, 8)); off = off + 8
  tree:add(F_write_key_id, tvb(off, 8)); off = off + 8
  do local sub = tree:add(t10k, tvb(off, limit - off), "receipt"); off = parse_WrappedReceipt(tvb, off, sub, limit) end
  do local n = tvb(off, 1):uint(); tree:add(F_media_keys, tvb(off, 1)); off = off + 1
    for i = 1, n do local sub = tree:add(t10k, tvb(off, limit - off), "media_keys " .. i); off = parse_WrappedMediaKey(tvb, off, sub, limit) end end
  return off
end

parse_NO_PACKAGE = function(tvb, off, tree, limit)
  tree:add(F_csn, tvb(off, 8)); off = off + 8
  tree:add(F_kind, tvb(off, 1)); off = off + 1
  tree:add(F_reason, tvb(off, 1)); off = off + 1
  return off
end

parse_KEY_ACK = function(tvb, off, tree, limit)
  tree:add(F_csn, tvb(off, 8)); off = off + 8
  tree:add(F_kind, tvb(off, 1)); off = off + 1
  tree:add(F_timestamp, tvb(off, 8)); off = off + 8
  tree:add(F_key_ack_receipt, tvb(off, 16)); off = off + 16
  return off
end

parse_ERROR_REPORT = function(tvb, off, tree, limit)
  tree:add(F_csn, tvb(off, 8)); off = off + 8
  tree:add(F_error_code, tvb(off, 4)); off = off + 4
  tree:add(F_key_id, tvb(off, 8)); off = off + 8
  tree:add(F_timestamp, tvb(off, 8)); off = off + 8
  tree:add(F_mac, tvb(off, 16)); off = off + 16
  return off
end

parse_CLEAR_KEYS = function(tvb, off, tree, limit)
  tree:add(F_token_id, tvb(off, 8)); off = off + 8
  tree:add(F_part, tvb(off, 2)); off = off + 2
  tree:add(F_parts, tvb(off, 2)); off = off + 2
  do local n = tvb(off, 2):uint(); tree:add(F_authorizations, tvb(off, 2)); off = off + 2
    for i = 1, n do local sub = tree:add(t10k, tvb(off, limit - off), "authorizations " .. i); off = parse_ClearAuthorization(tvb, off, sub, limit) end end
  return off
end

parse_WRITE_EKT = function(tvb, off, tree, limit)
  tree:add(F_timestamp, tvb(off, 8)); off = off + 8
  do local n = tvb(off, 4):uint(); tree:add(F_entries, tvb(off, 4)); off = off + 4
    for i = 1, n do local sub = tree:add(t10k, tvb(off, limit - off), "entries " .. i); off = parse_EktEntry(tvb, off, sub, limit) end end
  do local sub = tree:add(t10k, tvb(off, limit - off), "announcement"); off = parse_Announcement(tvb, off, sub, limit) end
  return off
end

parse_WRITE_OKT = function(tvb, off, tree, limit)
  do local n = tvb(off, 2):uint(); if n > 0 then tree:add(F_pool, tvb(off + 2, n)) end; off = off + 2 + n end
  tree:add(F_okt_timestamp, tvb(off, 8)); off = off + 8
  do local n = tvb(off, 4):uint(); tree:add(F_entries, tvb(off, 4)); off = off + 4
    for i = 1, n do local sub = tree:add(t10k, tvb(off, limit - off), "entries " .. i); off = parse_OktEntry(tvb, off, sub, limit) end end
  do local sub = tree:add(t10k, tvb(off, limit - off), "announcement"); off = parse_Announcement(tvb, off, sub, limit) end
  return off
end

parse_READ_STATUS = function(tvb, off, tree, limit)
  return off
end

parse_CLEAR_ERROR = function(tvb, off, tree, limit)
  return off
end

parse_RESYNC = function(tvb, off, tree, limit)
  tree:add(F_challenge, tvb(off, 16)); off = off + 16
  return off
end

parse_MGMT_RESULT = function(tvb, off, tree, limit)
  tree:add(F_mgmt_result_status, tvb(off, 1)); off = off + 1
  do local n = tvb(off, 2):uint(); if n > 0 then tree:add(F_message, tvb(off + 2, n)) end; off = off + 2 + n end
  return off
end

parse_TOKEN_STATUS = function(tvb, off, tree, limit)
  tree:add(F_token_id, tvb(off, 8)); off = off + 8
  tree:add(F_mode, tvb(off, 1)); off = off + 1
  tree:add(F_led3, tvb(off, 1)); off = off + 1
  tree:add(F_error_led, tvb(off, 1)); off = off + 1
  tree:add(F_timestamp, tvb(off, 8)); off = off + 8
  do local n = tvb(off, 2):uint(); if n > 0 then tree:add(F_pool, tvb(off + 2, n)) end; off = off + 2 + n end
  tree:add(F_csn_count, tvb(off, 4)); off = off + 4
  tree:add(F_packages_held, tvb(off, 4)); off = off + 4
  tree:add(F_acknowledged, tvb(off, 4)); off = off + 4
  do local n = tvb(off, 4):uint(); tree:add(F_errors, tvb(off, 4)); off = off + 4
    for i = 1, n do local sub = tree:add(t10k, tvb(off, limit - off), "errors " .. i); off = parse_TokenError(tvb, off, sub, limit) end end
  tree:add(F_last_write_counter, tvb(off, 8)); off = off + 8
  return off
end

parse_MGMT_CHALLENGE = function(tvb, off, tree, limit)
  tree:add(F_challenge, tvb(off, 16)); off = off + 16
  return off
end

parse_VOP_STATUS_REQUEST = function(tvb, off, tree, limit)
  return off
end

parse_VOP_STATUS = function(tvb, off, tree, limit)
  tree:add(F_csn, tvb(off, 8)); off = off + 8
  tree:add(F_encrypting_model, tvb(off, 1)); off = off + 1
  tree:add(F_led, tvb(off, 1)); off = off + 1
  tree:add(F_encryption_enabled, tvb(off, 1)); off = off + 1
  tree:add(F_reset, tvb(off, 1)); off = off + 1
  tree:add(F_need_okt, tvb(off, 1)); off = off + 1
  tree:add(F_holding_keys, tvb(off, 1)); off = off + 1
  tree:add(F_okt_timestamp, tvb(off, 8)); off = off + 8
  tree:add(F_device_key_timestamp, tvb(off, 8)); off = off + 8
  tree:add(F_media_key_count, tvb(off, 1)); off = off + 1
  tree:add(F_write_key_id, tvb(off, 8)); off = off + 8
  return off
end

parse_VOP_RESET_DRIVE = function(tvb, off, tree, limit)
  tree:add(F_challenge, tvb(off, 16)); off = off + 16
  tree:add(F_mac, tvb(off, 16)); off = off + 16
  return off
end

parse_VOP_RESULT = function(tvb, off, tree, limit)
  tree:add(F_vop_result_status, tvb(off, 1)); off = off + 1
  do local n = tvb(off, 2):uint(); if n > 0 then tree:add(F_message, tvb(off + 2, n)) end; off = off + 2 + n end
  return off
end

parse_VOP_LOAD = function(tvb, off, tree, limit)
  do local n = tvb(off, 1):uint(); if n > 0 then tree:add(F_volser, tvb(off + 1, n)) end; off = off + 1 + n end
  return off
end

parse_VOP_UNLOAD = function(tvb, off, tree, limit)
  return off
end

parse_VOP_CHALLENGE_REQUEST = function(tvb, off, tree, limit)
  return off
end

parse_VOP_CHALLENGE = function(tvb, off, tree, limit)
  tree:add(F_csn, tvb(off, 8)); off = off + 8
  tree:add(F_challenge, tvb(off, 16)); off = off + 16
  return off
end

local BODY = {[1] = parse_KEYS_AVAILABLE, [2] = parse_KEY_REQUEST, [3] = parse_DEVICE_KEY_PACKAGE, [4] = parse_MEDIA_KEY_PACKAGE, [5] = parse_NO_PACKAGE, [6] = parse_KEY_ACK, [7] = parse_ERROR_REPORT, [8] = parse_CLEAR_KEYS, [32] = parse_WRITE_EKT, [33] = parse_WRITE_OKT, [34] = parse_READ_STATUS, [35] = parse_CLEAR_ERROR, [36] = parse_RESYNC, [48] = parse_MGMT_RESULT, [49] = parse_TOKEN_STATUS, [50] = parse_MGMT_CHALLENGE, [64] = parse_VOP_STATUS_REQUEST, [65] = parse_VOP_STATUS, [66] = parse_VOP_RESET_DRIVE, [67] = parse_VOP_RESULT, [68] = parse_VOP_LOAD, [69] = parse_VOP_UNLOAD, [70] = parse_VOP_CHALLENGE_REQUEST, [71] = parse_VOP_CHALLENGE}


local function frame_length(tvb, off)
  local body = tvb(off + 12, 4):uint()
  local trailer = 0
  if bit.band(tvb(off + 6, 2):uint(), 1) ~= 0 then trailer = 20 end
  return 16 + body + trailer, body, trailer
end

function t10k.dissector(tvb, pinfo, tree)
  local off, len, names = 0, tvb:len(), {}
  while off < len do
    if len - off < 16 then
      pinfo.desegment_offset = off
      pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
      return len
    end
    if tvb(off, 4):bytes():tohex() ~= "5431304B" then return off end
    local total, body, trailer = frame_length(tvb, off)
    if len - off < total then
      pinfo.desegment_offset = off
      pinfo.desegment_len = total - (len - off)
      return len
    end
    local mtype = tvb(off + 5, 1):uint()
    local subtree = tree:add(t10k, tvb(off, total), "t10k " .. (E_MessageType[mtype] or "unknown"))
    subtree:add(F_magic, tvb(off, 4)); subtree:add(F_version, tvb(off + 4, 1))
    subtree:add(F_type, tvb(off + 5, 1)); subtree:add(F_flags, tvb(off + 6, 2))
    subtree:add(F_sequence, tvb(off + 8, 4)); subtree:add(F_body_length, tvb(off + 12, 4))
    local parse = BODY[mtype]
    if trailer > 0 then
      -- a management body is sealed under the token secret: its size is all anyone else sees
      if body > 0 then
        subtree:add(F_sealed, tvb(off + 16, body)):set_text("sealed, " .. body .. " octets")
      end
      subtree:add(F_counter, tvb(off + 16 + body, 8)); subtree:add(F_nonce, tvb(off + 16 + body + 8, 12))
    elseif parse and body > 0 then
      local ok, err = pcall(parse, tvb, off + 16, subtree, off + 16 + body)
      if not ok then subtree:add_expert_info(PI_MALFORMED, PI_ERROR, tostring(err)) end
    end
    table.insert(names, E_MessageType[mtype] or "?")
    off = off + total
  end
  pinfo.cols.protocol:set("T10K")
  pinfo.cols.info:set(table.concat(names, ", "))
  return off
end

local udp = DissectorTable.get("udp.port")
for _, port in ipairs({7010, 7011, 7012}) do udp:add(port, t10k) end
local tcp = DissectorTable.get("tcp.port")
for _, port in ipairs({7020, 7030}) do tcp:add(port, t10k) end
