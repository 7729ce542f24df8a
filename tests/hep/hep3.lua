-- A HEP3 dissector for tshark, written from the HEP3 specification
-- (sipcapture's "HEP3 Network Protocol Specification"): a "HEP3" header
-- with the packet's total length, then chunks of vendor id (16 bits),
-- type id (16), length (16, the chunk's own 6 bytes included) and value.
-- Generic chunks (vendor 0): 1 IP family, 2 IP protocol, 3/4 IPv4 source
-- and destination, 5/6 IPv6, 7/8 ports, 9/10 time (s, µs), 11 protocol
-- type (1 SIP, 5 RTCP as JSON, ...), 12 capture agent id, 14 auth key,
-- 15 payload, 17 correlation id.
--
-- Used by tests/tests/hep_capture.rs: `tshark -X lua_script:hep3.lua`
-- reads the capture of what the gateway sent its collector; a SIP payload
-- is handed to tshark's own SIP dissector, so the SIP fields tshark shows
-- (sip.Call-ID, sip.Method, ...) are Wireshark's reading of the copy. A
-- packet that breaks the framing is marked malformed (hep3.malformed) and
-- not dissected further. Debian's Wireshark 4.0 has no HEP dissector of
-- its own.

local hep3 = Proto("hep3", "HEP3 (Homer Encapsulation Protocol v3)")

local f = {
  length = ProtoField.uint16("hep3.length", "Total length"),
  family = ProtoField.uint8("hep3.ip_family", "IP family"),
  ip_proto = ProtoField.uint8("hep3.ip_proto", "IP protocol"),
  src4 = ProtoField.ipv4("hep3.src_ip", "Source IPv4"),
  dst4 = ProtoField.ipv4("hep3.dst_ip", "Destination IPv4"),
  src6 = ProtoField.ipv6("hep3.src_ip6", "Source IPv6"),
  dst6 = ProtoField.ipv6("hep3.dst_ip6", "Destination IPv6"),
  sport = ProtoField.uint16("hep3.src_port", "Source port"),
  dport = ProtoField.uint16("hep3.dst_port", "Destination port"),
  sec = ProtoField.uint32("hep3.ts_sec", "Time, seconds"),
  usec = ProtoField.uint32("hep3.ts_usec", "Time, microseconds"),
  ptype = ProtoField.uint8("hep3.proto_type", "Protocol type"),
  capture_id = ProtoField.uint32("hep3.capture_id", "Capture agent id"),
  auth = ProtoField.string("hep3.auth_key", "Auth key"),
  payload = ProtoField.string("hep3.payload", "Payload"),
  correlation = ProtoField.string("hep3.correlation_id", "Correlation id"),
  chunks = ProtoField.uint16("hep3.chunks", "Chunks"),
  malformed = ProtoField.string("hep3.malformed", "Malformed"),
}
hep3.fields = { f.length, f.family, f.ip_proto, f.src4, f.dst4, f.src6, f.dst6, f.sport,
  f.dport, f.sec, f.usec, f.ptype, f.capture_id, f.auth, f.payload, f.correlation, f.chunks,
  f.malformed }

-- Generic chunk types with a fixed width, and their fields.
local fixed = {
  [1] = { 1, f.family }, [2] = { 1, f.ip_proto }, [3] = { 4, f.src4 }, [4] = { 4, f.dst4 },
  [5] = { 16, f.src6 }, [6] = { 16, f.dst6 }, [7] = { 2, f.sport }, [8] = { 2, f.dport },
  [9] = { 4, f.sec }, [10] = { 4, f.usec }, [11] = { 1, f.ptype }, [12] = { 4, f.capture_id },
}
local text = { [14] = f.auth, [15] = f.payload, [17] = f.correlation }

local sip = Dissector.get("sip")

local function dissect(buf, pinfo, tree)
  if buf:len() < 6 or buf(0, 4):string() ~= "HEP3" then return 0 end
  pinfo.cols.protocol = "HEP3"
  local t = tree:add(hep3, buf())
  local total = buf(4, 2):uint()
  t:add(f.length, buf(4, 2))
  if total < 6 or total > buf:len() then
    t:add(f.malformed, "total length " .. total .. " in " .. buf:len() .. " bytes")
    return buf:len()
  end
  local at, n, ptype, body = 6, 0, nil, nil
  while at < total do
    if at + 6 > total then
      t:add(f.malformed, "a chunk header cut at " .. at)
      return total
    end
    local vendor, kind, len = buf(at, 2):uint(), buf(at + 2, 2):uint(), buf(at + 4, 2):uint()
    if len < 6 or at + len > total then
      t:add(f.malformed, "chunk " .. kind .. " of length " .. len .. " at " .. at)
      return total
    end
    local value = buf(at + 6, len - 6)
    if vendor == 0 and fixed[kind] then
      if len - 6 ~= fixed[kind][1] then
        t:add(f.malformed, "chunk " .. kind .. " of " .. (len - 6) .. " bytes")
        return total
      end
      t:add(fixed[kind][2], value)
      if kind == 11 then ptype = value:uint() end
    elseif vendor == 0 and text[kind] and len > 6 then
      t:add(text[kind], value)
      if kind == 15 then body = value end
    end
    n = n + 1
    at = at + len
  end
  t:add(f.chunks, n)
  if ptype == 1 and body then
    sip:call(body:tvb(), pinfo, tree)
  end
  return total
end

hep3.dissector = dissect
hep3:register_heuristic("udp", function(buf, pinfo, tree)
  if buf:len() < 6 or buf(0, 4):string() ~= "HEP3" then return false end
  dissect(buf, pinfo, tree)
  return true
end)
