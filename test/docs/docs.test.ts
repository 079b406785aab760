/**
 * The documentation's promises that a test can hold: the README opens with the two newcomer commands, every relative
 * link resolves, and docs/cli.md documents every data command with every option the parser accepts.
 */
import { CliConfig, Command, CommandDescriptor, HelpDoc } from "@effect/cli"
import { assert, describe, it } from "@effect/vitest"
import { HashMap } from "effect"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { dataCommands } from "../../src/cli/data.js"

const ROOT = fileURLToPath(new URL("../..", import.meta.url))
const read = (path: string) => readFileSync(join(ROOT, path), "utf8")
const pages = ["README.md", ...readdirSync(join(ROOT, "docs")).map((name) => `docs/${name}`)].filter((p) =>
  p.endsWith(".md")
)

const optionsIn = (help: string): Array<string> => help.match(/--[a-z][a-z-]*/g) ?? []

describe("documentation", () => {
  it("README.md opens with `npm install && npm start`, then `npm test`", () => {
    const lines = read("README.md")
      .split("\n")
      .filter((line) => line.trim() !== "")
    assert.deepStrictEqual(lines.slice(0, 5), ["# memsync", "```sh", "npm install && npm start", "npm test", "```"])
  })

  it("README.md links the architecture, CLI and library pages", () => {
    const readme = read("README.md")
    for (const page of ["docs/architecture.md", "docs/cli.md", "docs/library.md"]) assert.include(readme, `](${page})`)
  })

  it("every relative link in the docs points at a file that exists", () => {
    for (const page of pages) {
      for (const [, target] of read(page).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (target === undefined || /^[a-z]+:/.test(target) || target.startsWith("#")) continue
        const path = join(ROOT, dirname(page), target.split("#")[0]!)
        assert.isTrue(existsSync(path), `${page} links to ${target}, which does not exist`)
      }
    }
  })

  it("docs/cli.md has a section for every data command, naming every option it accepts", () => {
    const doc = read("docs/cli.md")
    // The commands as the CLI assembles them (see src/cli/bin.ts), so their help is what the parser accepts.
    const root = Command.make("memsync").pipe(Command.withSubcommands([...dataCommands]))
    const commands = Array.from(HashMap.entries(Command.getSubcommands(root)))
    assert.strictEqual(commands.length, dataCommands.length)
    // Built-in options (--help, --version, --completions...) appear in every command's help; docs/cli.md skips them.
    const builtIn = new Set(optionsIn(HelpDoc.toAnsiText(Command.getHelp(Command.make("x"), CliConfig.defaultConfig))))
    for (const [name, command] of commands) {
      const start = doc.indexOf(`### memsync ${name}\n`)
      assert.isAtLeast(start, 0, `docs/cli.md has no "### memsync ${name}" section`)
      const end = doc.slice(start + 1).search(/\n##/)
      const section = end === -1 ? doc.slice(start) : doc.slice(start, start + 1 + end)
      const help = HelpDoc.toAnsiText(CommandDescriptor.getHelp(command, CliConfig.defaultConfig))
      const options = new Set(optionsIn(help).filter((option) => !builtIn.has(option)))
      assert.isTrue(options.has("--db") && options.has("--json"), `memsync ${name} help: ${help}`)
      for (const option of options) {
        assert.include(section, option, `docs/cli.md: the memsync ${name} section does not mention ${option}`)
      }
    }
  })
})
