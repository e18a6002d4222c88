-- Memory errors and leaks: ct-lua runs a script that goes through every
-- allocating path of the module under valgrind's memcheck, which must
-- report no error and no leaked block.
local H = require "helpers"

describe("valgrind memcheck", function()
  it("finds no error and no leak in dump, create, update, delete and flush", function()
    H.reset()
    local out, status, err = H.run("valgrind --error-exitcode=99 --leak-check=full " ..
                                   "--show-leak-kinds=definite,indirect,possible " ..
                                   "--errors-for-leak-kinds=definite,indirect,possible " ..
                                   "./ct-lua tests/fixtures/exercise.lua")
    assert.equal("done\n", out, err)
    assert.equal(0, status, err)
    assert.truthy(err:find("ERROR SUMMARY: 0 errors", 1, true), err)
  end)
end)
