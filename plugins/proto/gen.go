package proto

// Regenerate plugin.pb.go and plugin_grpc.pb.go after editing plugin.proto.
// Needs protoc (Debian's protobuf-compiler, 3.21) and the two Go generators
// at the versions the committed code was made with:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//	PATH="$(go env GOPATH)/bin:$PATH" go generate ./plugins/proto
//
//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative plugin.proto
