package dnstap

// Regenerate the reference bindings after editing dnstap.proto (needs protoc,
// Debian package protobuf-compiler, and protoc-gen-go at the go.mod version:
// go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12):
//
//go:generate protoc --go_out=dnstappb --go_opt=paths=source_relative --go_opt=Mdnstap.proto=github.com/sinkhole-dns/sinkhole/resolver/dnstap/dnstappb dnstap.proto
