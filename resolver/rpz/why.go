package rpz

// The platform, authority, order and contact every exported block
// shares: RPZ has no place for per-rule text (any record at a trigger is
// policy), so what the whole zone shares is all it can carry. The export
// writes those values as TXT records at the apex, in list-directive form
// ("authority: Ministry of Finance"), and sinkhole's RPZ reader applies
// them to every rule of the zone.
var whyKeys = [4]string{"platform", "authority", "order", "contact"}
