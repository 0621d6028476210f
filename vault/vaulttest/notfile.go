package vaulttest

import "tagwatch/vault/vaulttest/testfiles"

// NotAFile is a thing at the vault path that is not a regular file
// (testfiles.Make puts it) and what vault.Open's *vault.BadFileError says
// it is, after "vault file PATH ".
type NotAFile struct {
	Kind testfiles.Kind
	Says string
}

// NotFiles lists a NotAFile of every testfiles.Kind: the vault's tests
// check that Open identifies each, the daemon's that every door that
// opens the vault passes the same words on.
var NotFiles = []NotAFile{
	{testfiles.Directory, "is a directory, not a vault file"},
	{testfiles.FIFO, "is a named pipe (FIFO), not a vault file"},
	{testfiles.Socket, "is a socket, not a vault file"},
	{testfiles.Device, "is a character device, not a vault file"},
	{testfiles.SymlinkLoop, "is a symbolic link loop"},
	// Something is there: never "no vault yet".
	{testfiles.Dangling, "is a symbolic link to " + testfiles.DanglingTarget + ", which does not exist"},
}
