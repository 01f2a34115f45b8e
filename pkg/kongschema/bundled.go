package kongschema

// FileLogSchema is Kong's bundled file-log plugin's schema
// (kong/plugins/file-log/schema.lua in Kong 3.9), in -dump's JSON shape:
// the one bundled plugin kong.yml uses (to show subgate's decisions in
// Kong's log pipeline). The Lua pattern of path is written as the regexp it
// means; custom_fields_by_lua (Lua code) is left out: the stand-in runs no Lua.
const FileLogSchema = `{"name":"file-log","fields":[{"config":{"type":"record","required":true,"fields":[
{"path":{"type":"string","required":true,"match":"^[^*&%%\\` + "`" + `]+$","err":"not a valid filename"}},
{"reopen":{"type":"boolean","required":true,"default":false}}]}}]}`
